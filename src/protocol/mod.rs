//! The pure wire codec (to be written): frames, startup packets, lazy views.
