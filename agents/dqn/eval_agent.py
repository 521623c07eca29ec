"""Replays a trained DQN greedily and records one episode to recordings/.

python -m agents.dqn.eval_agent --environment_name=Pong
"""

from agents.dqn.agent import DqnConfig, build_network
from experiment.command_line import run_cli
from experiment.evaluate_checkpoint import EvalScript, greedy_actor
from greedy_actors import EpsilonGreedyActor

SCRIPT = EvalScript("dqn", DqnConfig, build_network, greedy_actor(EpsilonGreedyActor))

if __name__ == "__main__":
    run_cli(SCRIPT.main)
