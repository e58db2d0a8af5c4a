//! The reference spawner (see issue 4).
