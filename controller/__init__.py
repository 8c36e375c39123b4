"""The lane controller: declare lanes, agents, threads and wakes as YAML; a loop makes them so."""

__version__ = "0.1.0"
