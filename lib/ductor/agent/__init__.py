"""The agent side of a turn: workspace, prompt assembly and the markup in answers."""
