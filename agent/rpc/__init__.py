"""The agent's XML-RPC face: supervisord 4.3's /RPC2 (supervisor.* and system.*)."""
