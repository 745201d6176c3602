//! `bffctl images`: build the local Docker images the docker backend runs.
