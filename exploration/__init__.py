"""Exploration: ε and (β, γ) policy ladders, Agent57's bandit meta-controller, and NGU's episodic
and lifelong novelty."""
