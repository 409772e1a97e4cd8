"""The entry point that runs inside the container (or as the host-user process).

It starts on every run, so it imports only the standard library and what the base image
carries (see images/base.py IMAGE_REQUIREMENTS).
"""
