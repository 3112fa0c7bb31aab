"""Adapters that run edgerec inside other hosts (Ray Data); each is built on edgerec.api and imports its host lazily."""
