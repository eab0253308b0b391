"""Configuration: suite files read and checked, run plans, safe names, and loss plugins."""
