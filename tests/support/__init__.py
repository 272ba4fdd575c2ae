"""Helpers shared by the tests: payloads, HTTP posts, real servers, a browser, old databases."""
