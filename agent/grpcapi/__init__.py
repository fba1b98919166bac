"""The agent's gRPC face (AgentService)."""
