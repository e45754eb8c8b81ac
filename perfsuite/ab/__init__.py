"""`perfsuite ab`: base and head measured side by side on this machine in one run (perfsuite.ab.run)."""
