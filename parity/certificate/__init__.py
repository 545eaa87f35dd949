"""The reproduction certificate: its steps, verdict and HTML page."""
