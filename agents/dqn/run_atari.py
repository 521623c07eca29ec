"""Trains DQN on an Atari game or on any Gymnasium environment with discrete actions.

python -m agents.dqn.run_atari --environment_name=Pong
python -m agents.dqn.run_atari --environment_name=CartPole-v1
"""

from __future__ import annotations

from agents.dqn.agent import DqnConfig, build_agent
from experiment.command_line import run_cli
from experiment.runner import define_single_thread_agent_flags, run_single_thread_agent_from_flags
from greedy_actors import EpsilonGreedyActor

# Four environments stepped together by default: one batched forward pass serves four agent
# steps, which on a small network (MinAtar) is most of the acting cost. Updates stay at one per
# --agent_steps_per_update agent steps counted over all of them (docs/deviations.md).
define_single_thread_agent_flags(DqnConfig, {"num_envs": 4})


def main() -> None:
    run_single_thread_agent_from_flags("dqn", DqnConfig, build_agent, EpsilonGreedyActor)


if __name__ == "__main__":
    run_cli(main)
