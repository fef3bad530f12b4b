"""The risk officers' review page (`fraudscore serve` serves it on its own port): see `app`."""
