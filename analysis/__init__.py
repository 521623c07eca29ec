"""Turning finished runs into results: the report (learning curves, score tables), score
statistics, and the published Atari reference scores."""
