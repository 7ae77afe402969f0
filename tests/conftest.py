"""Shared pytest configuration: fixtures live in plugin modules registered here."""

pytest_plugins = ["tests.data_fixtures", "tests.recipe_helpers"]
