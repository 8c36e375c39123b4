"""The runtime: one reconcile pass, the apply step, the daemon, and the composition root."""
