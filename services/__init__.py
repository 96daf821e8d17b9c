"""The five services of the Children's Teams platform; each owns its schema and talks to the others only by events."""
