"""``make demo``: a coordinator, three ``fleet-agent`` processes and 500 jobs, live."""
