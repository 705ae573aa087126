"""Makes the shared fixtures (real workers, SMTP server, test Redis) visible to every test."""

pytest_plugins = ["tests.fixtures", "tests.browser", "tests.production"]
