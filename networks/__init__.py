"""Q-networks, the recurrent R2D2 network, and (later) the embedding and RND networks."""
