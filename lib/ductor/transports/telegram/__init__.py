"""The Telegram transport.

:mod:`~ductor.transports.telegram.formatting` turns the agent's Markdown into
Telegram's HTML subset and cuts it into messages; it is stdlib only, so it can be used
(and tested) without python-telegram-bot.
"""
