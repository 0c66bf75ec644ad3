"""The test suite. It runs on the pure-Python modules unless ``REACTOR_BUILD`` says otherwise (``make test-compiled``
runs the tests marked ``compiled`` with ``REACTOR_BUILD=fast``); the processes it starts inherit the choice."""
import os

os.environ.setdefault("REACTOR_BUILD", "pure")
