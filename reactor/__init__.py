"""The chat's reactor: the loop and its connections at the root, the applications in server/, client/, cluster/.

``BUILD`` says which build of the hot modules runs (``reactor.builds``): ``pure`` (the sources, the default),
``fast`` (the same sources compiled by ``make fast``), or ``refused`` (a stale or missing fast build: importing a
hot module raises an ImportError that says what to do).
"""
from .builds import use

BUILD = use()
del use
