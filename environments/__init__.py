"""The parts gym_env.py assembles into environment batches: how a Gymnasium environment's spaces
are checked and its observations adapted (observations.py), and the MinAtar games (minatar.py)."""
