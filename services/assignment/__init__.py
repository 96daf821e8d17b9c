"""Assignment service: best-fit lead professional, siblings, capacity and manager confirmation."""
