"""The messengers ductor talks through: each turns agent answers into its own format.

A transport receives the agent's Markdown, converts it to what the messenger renders,
cuts it to the messenger's size limit and delivers it. Nothing in this package is needed
by the oneshots, and only the modules that talk to a network import a messenger library.
"""
