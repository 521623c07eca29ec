"""DQN (Mnih et al. 2015) with optional double Q, dueling head, n-step returns and PER.

The Actor acts ε-greedily on a batch of environments and writes every step to replay. The
Learner samples replay, takes one Adam step on the Huber TD loss, refreshes priorities, and
copies the online network into the target network every `target_update_period` updates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

import value_learning
from agents.common.schedules import LinearSchedule
from agents.common.target_learner import (
    TargetNetworkLearner,
    check_evaluation_average_decay,
    check_optimizer_name,
)
from environments.observations import frame_layout
from experiment.checkpoint import numpy_rng_state, restore_numpy_rng
from experiment.errors import ConfigError, require_positive
from experiment.seeding import derive_seed
from frame_codec import is_small_frame
from greedy_actors import epsilon_greedy_actions
from networks.value import QNetwork, check_torso_name, q_network_for
from replay import TransitionReplay


@dataclasses.dataclass(frozen=True)
class DqnConfig:
    """DQN hyperparameters. Defaults: Nature DQN, with Adam and Huber (see docs/deviations.md)."""

    discount: float = 0.99
    """Discount γ per agent step (Nature DQN: 0.99)."""
    n_step: int = 1
    """n of the n-step return: rewards of n agent steps, then a bootstrap from Q (Nature DQN: 1;
    Rainbow: 3)."""
    batch_size: int = 32
    """Transitions per learner update (Nature DQN: 32)."""
    replay_capacity: int = 1_000_000
    """Transitions replay holds; the oldest are overwritten (Nature DQN: 1,000,000)."""
    min_replay_size: int = 50_000
    """Warm-up in agent steps (over all environments): replay fills this far with ε =
    exploration_start before the first update and before ε starts to fall (Nature DQN: 50,000)."""
    agent_steps_per_update: int = 4
    """Agent steps (over all environments) per learner update (Nature DQN: 4)."""
    target_update_period: int = 10_000  # In learner updates, as Nature's C.
    """Learner updates between copies of the online network into the target network (Nature DQN:
    C = 10,000)."""
    learning_rate: float = 1e-4
    """Adam learning rate (Nature DQN used RMSProp at 2.5e-4; see docs/deviations.md)."""
    adam_eps: float = 1.5e-4
    """Adam's ε, added to the root of the second-moment estimate (Rainbow's Adam: 1.5e-4)."""
    optimizer: str = "adam"
    """adam | rmsprop: the optimiser. rmsprop is the centred RMSProp of the MinAtar paper (Young
    & Tian 2019: learning_rate 2.5e-4, rmsprop_decay 0.95, rmsprop_eps 0.01); adam_eps then
    has no effect."""
    rmsprop_decay: float = 0.95
    """rmsprop only: the decay of the running averages of the gradient and its square (torch's
    alpha; MinAtar: 0.95)."""
    rmsprop_eps: float = 0.01
    """rmsprop only: added to the root of the centred second moment (MinAtar: 0.01)."""
    max_grad_norm: float = 10.0
    """Gradients are scaled down to this global L2 norm before each update (Nature DQN: none,
    its error clipping bounds them; dqn_zoo: 10)."""
    huber_delta: float = 1.0
    """δ of the Huber loss on the TD error: quadratic within ±δ, linear beyond (Nature DQN's
    error clipping to [-1, 1] gives the same gradient for δ = 1)."""
    exploration_start: float = 1.0
    """ε at the start: the probability of a uniformly random action (Nature DQN: 1.0)."""
    exploration_end: float = 0.1
    """ε after the linear decay (Nature DQN: 0.1)."""
    exploration_steps: int = 250_000  # Agent steps: 1M frames at frame skip 4.
    """Agent steps over which ε falls linearly from exploration_start to exploration_end,
    counted from the end of the warm-up (Nature DQN: 1M frames = 250,000 agent steps)."""
    double_q: bool = False
    """Double Q-learning targets: the online network picks the next action, the target network
    values it (van Hasselt et al. 2016)."""
    dueling: bool = False
    """Dueling head: value and advantage streams combined as Q = V + A − mean(A) (Wang et al.
    2016)."""
    prioritized: bool = False
    """Proportional prioritised replay: transitions are sampled with probability ∝ (|TD error| +
    priority_epsilon)^α (Schaul et al. 2016)."""
    priority_exponent: float = 0.6
    """α of prioritised replay: 0 samples uniformly, 1 in proportion to the priority (Schaul et
    al. 2016, proportional variant: 0.6)."""
    importance_sampling_start: float = 0.4
    """β of the importance-sampling weights that correct prioritised sampling, at the start; it
    rises linearly to importance_sampling_end over the run (Schaul et al. 2016: 0.4)."""
    importance_sampling_end: float = 1.0
    """β of the importance-sampling weights at the end of the run; 1 removes the sampling bias
    entirely (Schaul et al. 2016: 1)."""
    priority_epsilon: float = 1e-6
    """Added to |TD error| so that no transition's priority is 0 and every one can be sampled
    again."""
    torso: str = "auto"
    """auto | nature | minatar | mlp: the Q-network's torso. auto picks by observation: the
    Nature DQN (conv torso, fc 512) for images of 36x36 or more (Atari's 84x84 stacks), MinAtar's
    network (Young & Tian 2019: conv 16, fc 128, then the outputs) for smaller multi-channel ones
    ([C, 10, 10]), an MLP for vectors. A torso that cannot take the observation stops the run at
    start."""
    evaluation_average_decay: float = 0.0
    """0 (the papers): the run evaluates, checkpoints for eval_agent and records the online
    weights. d in (0, 1): it evaluates an exponential moving average of them instead, updated
    after every learner update as avg = d·avg + (1 − d)·online (about the last 1/(1 − d)
    updates), which smooths the noise of single weight snapshots. Acting in training is
    unchanged. See docs/deviations.md."""

    def __post_init__(self) -> None:
        check_torso_name(self.torso)
        check_optimizer_name(self.optimizer)
        check_evaluation_average_decay(self.evaluation_average_decay)
        if not 0.0 <= self.rmsprop_decay < 1.0:
            raise ConfigError(f"rmsprop_decay must be in [0, 1), got {self.rmsprop_decay}")
        require_positive(
            self,
            *("n_step", "batch_size", "replay_capacity", "agent_steps_per_update"),
            *("learning_rate", "adam_eps", "rmsprop_eps", "max_grad_norm", "huber_delta"),
        )
        if not 0.0 <= self.discount <= 1.0:
            raise ConfigError(f"discount must be in [0, 1], got {self.discount}")
        if self.min_replay_size < self.batch_size:
            raise ConfigError(
                f"min_replay_size ({self.min_replay_size}) must be at least batch_size "
                f"({self.batch_size})"
            )
        if self.min_replay_size > self.replay_capacity:
            raise ConfigError(
                f"min_replay_size ({self.min_replay_size}) exceeds replay_capacity "
                f"({self.replay_capacity})"
            )

    def epsilon_schedule(self) -> LinearSchedule:
        """ε over agent steps: `exploration_start` through the replay warm-up (no learning
        happens then), then linear to `exploration_end` over `exploration_steps` (Nature,
        Dopamine and dqn_zoo start the decay when learning starts)."""
        return LinearSchedule(
            self.exploration_start,
            self.exploration_end,
            self.exploration_steps,
            begin=self.min_replay_size,
        )


def make_replay(
    config: DqnConfig,
    num_envs: int,
    observation_shape: tuple[int, ...],
    observation_dtype: np.dtype,
    seed: int,
) -> TransitionReplay:
    """Replay storing one frame per step (environments.observations.frame_layout): an image stack's
    newest 2-D frame, or the whole observation (a vector, a MinAtar [C, H, W]). Bool frames are
    bit-packed; frames larger than frame_codec.SMALL_FRAME_BYTES (images) are also compressed."""
    layout = frame_layout(observation_shape)
    small = layout.is_vector or is_small_frame(layout.frame_shape, observation_dtype)
    return TransitionReplay(
        capacity=config.replay_capacity,
        num_streams=num_envs,
        observation_shape=layout.frame_shape,
        observation_dtype=observation_dtype,
        frame_stack=layout.frame_stack,
        n_step=config.n_step,
        discount=config.discount,
        compress=not small,
        prioritized=config.prioritized,
        priority_exponent=config.priority_exponent,
        seed=seed,
    )


def build_network(
    config: DqnConfig, observation_shape: tuple[int, ...], num_actions: int
) -> QNetwork:
    """DQN's one network builder, used by training and eval_agent alike."""
    return q_network_for(observation_shape, num_actions, config.dueling, config.torso)


class Actor:
    """ε-greedy on a linear schedule over agent steps; writes each step to replay."""

    def __init__(
        self,
        network: torch.nn.Module,
        replay: TransitionReplay,
        config: DqnConfig,
        seed: int,
        device: torch.device,
    ) -> None:
        self.network = network
        self.replay = replay
        self.epsilon_schedule = config.epsilon_schedule()
        self.device = device
        self.rng = np.random.default_rng(seed)
        self.agent_steps = 0

    def reset(self) -> None:
        """DQN keeps no per-episode state; replay sees episode starts through `first`."""

    @property
    def epsilon(self) -> float:
        return self.epsilon_schedule(self.agent_steps)

    @torch.no_grad()
    def step(self, timestep) -> np.ndarray:
        observation = torch.as_tensor(timestep.observation, device=self.device)
        actions = epsilon_greedy_actions(self.network(observation), self.epsilon, self.rng)
        self.replay.add(
            timestep.observation,
            timestep.reward,
            timestep.discount,
            timestep.first,
            timestep.last,
            actions,
        )
        self.agent_steps += len(actions)
        return actions

    def state_dict(self) -> dict[str, Any]:
        return {"agent_steps": self.agent_steps, "rng": numpy_rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent_steps = int(state["agent_steps"])
        restore_numpy_rng(self.rng, state["rng"])


class Learner(TargetNetworkLearner):
    """One gradient step per `step()` on a replay minibatch."""

    def __init__(
        self,
        network: torch.nn.Module,
        replay: TransitionReplay,
        config: DqnConfig,
        device: torch.device,
        total_updates: int,
    ) -> None:
        super().__init__(network, replay, config, device)
        self.importance_sampling = LinearSchedule(
            config.importance_sampling_start, config.importance_sampling_end, total_updates
        )

    def ready(self) -> bool:
        return self.replay.size >= self.config.min_replay_size

    def step(self) -> dict[str, float]:
        beta = self.importance_sampling(self.num_updates) if self.config.prioritized else 0.0
        batch, slots, weights = self.replay.sample(self.config.batch_size, beta)
        td_errors, q_tm1 = self._td_errors(batch)
        losses = value_learning.huber_loss(td_errors, self.config.huber_delta)
        if self.config.prioritized:  # Uniform replay's weights are all 1.
            losses = torch.as_tensor(weights, device=self.device) * losses
        loss = losses.mean()
        td_abs = td_errors.detach().abs()
        statistics = (q_tm1.detach().mean(), td_abs.mean())
        grad_norm = self.apply_gradients(loss, fetch=statistics)
        if self.config.prioritized:
            priorities = td_abs.cpu().numpy() + self.config.priority_epsilon
            self.replay.update_priorities(slots, priorities)
        q_value, td_error_abs = self.last_fetched
        return {
            "loss": self.last_loss,
            "q_value": q_value,
            "td_error_abs": td_error_abs,
            "grad_norm": grad_norm,
        }

    def _td_errors(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, device=self.device)

        s_tm1, s_t = tensor(batch.s_tm1), tensor(batch.s_t)
        a_tm1, r_t, discount_t = tensor(batch.a_tm1), tensor(batch.r_t), tensor(batch.discount_t)
        q_tm1 = self.network(s_tm1)
        with torch.no_grad():
            target_q_t = self.target_network(s_t)
        if self.config.double_q:
            with torch.no_grad():
                online_q_t = self.network(s_t)
            td = value_learning.double_q_learning(
                q_tm1, a_tm1, r_t, discount_t, target_q_t, online_q_t
            )
        else:
            td = value_learning.q_learning(q_tm1, a_tm1, r_t, discount_t, target_q_t)
        return td, q_tm1


def build_agent(
    config: DqnConfig,
    observation_shape: tuple[int, ...],
    observation_dtype: np.dtype,
    num_actions: int,
    num_envs: int,
    seed: int,
    device: torch.device,
    total_updates: int,
    resume_point: int = 0,
) -> tuple[Actor, Learner]:
    """The network, replay, actor and learner of one DQN agent, sharing the online network.

    The actor's exploration and the replay sampler draw from independent streams. A resumed
    run restores the actor's stream from its checkpoint; the sampler's (unless replay is
    restored with it) starts a new stream named by `resume_point`, the agent steps at the
    checkpoint.
    """
    network = build_network(config, observation_shape, num_actions).to(device)
    replay_seed = derive_seed(seed, "replay", resume_point)
    replay = make_replay(config, num_envs, observation_shape, observation_dtype, replay_seed)
    actor = Actor(network, replay, config, derive_seed(seed, "exploration"), device)
    learner = Learner(network, replay, config, device, total_updates)
    return actor, learner
