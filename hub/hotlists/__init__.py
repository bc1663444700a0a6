"""Hot lists on the hub (policy §2, 4.1, 4.5): the versioned change log in Cassandra
(:mod:`hub.hotlists.store`), the in-memory mirror every hub matches reads against
(:mod:`hub.hotlists.mirror`), ``HotListService`` (:mod:`hub.hotlists.service`) and the list
file formats it imports (:mod:`hub.hotlists.file_formats`)."""
