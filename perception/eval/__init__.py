"""Evaluation, apart from the runtime: MOTChallenge tracking scores (`mot`), TTC/distance/warning scores
against ground truth (`ttc`), and the synthetic collision scenarios they are scored on (`synthetic`)."""
