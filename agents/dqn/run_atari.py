"""Trains DQN on an Atari game or on any Gymnasium environment with discrete actions.

python -m agents.dqn.run_atari --environment_name=Pong
python -m agents.dqn.run_atari --environment_name=CartPole-v1
"""

from __future__ import annotations

from agents.dqn.agent import DqnConfig, build_agent
from experiment.command_line import run_cli
from experiment.runner import define_single_thread_agent_flags, run_single_thread_agent_from_flags
from greedy_actors import EpsilonGreedyActor

define_single_thread_agent_flags(DqnConfig)


def main() -> None:
    run_single_thread_agent_from_flags("dqn", DqnConfig, build_agent, EpsilonGreedyActor)


if __name__ == "__main__":
    run_cli(main)
