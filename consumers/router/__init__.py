"""The router: turns "notify user U about X" into exactly the right messages on the channel topics."""
