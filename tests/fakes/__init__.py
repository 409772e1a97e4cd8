"""Fakes the tests run against: real servers speaking the model providers' HTTP APIs."""
