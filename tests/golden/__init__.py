"""Golden bytes: requests captured from real clients, decoded field by field."""
