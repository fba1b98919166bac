"""A fleet simulator: thousands of virtual agents speaking the real protocol to a real
controller (with a real etcd), to measure the controller and what is built on it at fleet
sizes no test machine can run real agents for. See main.py for the command."""
