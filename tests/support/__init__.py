"""What the tests share that is not a test: scripts to render, ways to check a video, and the
real services some tests run. Plain functions and context managers only; the pytest fixtures
that wrap them live in the conftest.py files."""
