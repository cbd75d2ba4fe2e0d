"""Stream-processing applications written as their frameworks' users write them, run by
``interop/test_streams.py`` in a virtualenv of their own (``.venv-streams``)."""
