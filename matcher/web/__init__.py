"""The coordinators' HTTP doors: a JSON API under /api and a web console under /console."""
