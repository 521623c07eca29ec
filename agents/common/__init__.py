"""Parts several agents share: the target-network learner base, the recurrent family's sequence
learning (replay columns, chunk recording, unrolls, masks), and schedules."""
