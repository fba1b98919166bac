"""fleetvisor."""
