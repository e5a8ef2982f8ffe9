"""Repository-wide pytest set-up: notebooks collected by nbval run with their smoke settings."""
import os

os.environ.setdefault("WORKBENCH_SMOKE", "1")
