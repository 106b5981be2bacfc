"""Flower's engine for oncofed's analyses (floor 4): the apps, and the deployment around them."""
