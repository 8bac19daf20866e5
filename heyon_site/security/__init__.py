"""Secrets: password hashing, the device-aware guessing throttle shared by cards and staff, and
the device cookie that tells a known browser from a stranger."""
