"""Published checkpoint formats: the official repositories' and mmpose's key names mapped to the zoo's."""
