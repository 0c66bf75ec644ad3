"""The simulator: the real server and client rules on virtual time and a virtual network, searched by Hypothesis.

``python3 -m reactor.sim --seed S`` runs one seed; ``make sim`` runs seeds until
stopped (docs/debugging.md, "The simulator"). Nothing in the product imports
this package: it needs ``hypothesis`` (the dev extra).
"""
