"""Who is asking and whether they may: sessions, principals and the authorizer hook.

Today every connection is ``User:ANONYMOUS`` on a PLAINTEXT listener and the authorizer
allows everything, as a Kafka broker without ``authorizer.class.name`` does.  SASL fills in
the principal and an ACL authorizer replaces :class:`AllowAllAuthorizer`; no handler changes.
"""
