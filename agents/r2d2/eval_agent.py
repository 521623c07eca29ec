"""Replays a trained R2D2 agent greedily (carrying its LSTM state) and records one episode.

python -m agents.r2d2.eval_agent --environment_name=Pong
"""

from agents.r2d2.agent import R2d2Config, build_network
from experiment.command_line import run_cli
from experiment.evaluate_checkpoint import EvalScript, greedy_actor
from greedy_actors import RecurrentEpsilonGreedyActor

SCRIPT = EvalScript("r2d2", R2d2Config, build_network, greedy_actor(RecurrentEpsilonGreedyActor))

if __name__ == "__main__":
    run_cli(SCRIPT.main)
