"""Two-stage Miller op-amp sizing benchmark over PVT corners (analytic numpy and ngspice backends)."""
