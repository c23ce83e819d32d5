# CPack: Debian packages of btq's install components (README.md, "Installing").
#
#   btq-schedule-server  component "server": schedule_server and schedule_worker in /usr/bin,
#                        the sample data in /usr/share/btq/sample-data, the systemd unit
#                        schedule-server.service in /usr/lib/systemd/system
#   libbtq-dev           component "development": the headers, the CMake package, the
#                        pkg-config files (architecture all: headers only)
#
# `cpack -G DEB` in the build folder (or `cmake --build BUILD --target package`) writes both
# .deb files there. Depends come from dpkg-shlibdeps (CPACK_DEBIAN_PACKAGE_SHLIBDEPS).

set(BTQ_SERVER_PACKAGE_NAME btq-schedule-server)
set(BTQ_DEVELOPMENT_PACKAGE_NAME libbtq-dev)

# Debian wants each package's copyright file in /usr/share/doc/PACKAGE.
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE"
    DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/${BTQ_DEVELOPMENT_PACKAGE_NAME}"
    RENAME copyright
    COMPONENT development)
if(TARGET schedule_server AND TARGET schedule_worker)
    install(FILES "${PROJECT_SOURCE_DIR}/LICENSE"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/${BTQ_SERVER_PACKAGE_NAME}"
        RENAME copyright
        COMPONENT server)
    set(CPACK_COMPONENTS_ALL development server)
else()
    set(CPACK_COMPONENTS_ALL development)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME btq)
set(CPACK_PACKAGE_VENDOR "The btq authors")
set(CPACK_PACKAGE_CONTACT "The btq authors <maintainers@users.noreply.r-seed-4a4d9687.example>")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY "${PROJECT_BINARY_DIR}/packages")

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)

set(CPACK_DEBIAN_SERVER_PACKAGE_NAME "${BTQ_SERVER_PACKAGE_NAME}")
set(CPACK_DEBIAN_SERVER_PACKAGE_SECTION net)
# libpq is loaded with dlopen() only for a postgresql:// --database, so dpkg-shlibdeps cannot
# see it: suggested, not depended on.
set(CPACK_DEBIAN_SERVER_PACKAGE_SUGGESTS "libpq5")
# Each description's first line is the package's summary (CPack has no summary per component).
set(CPACK_COMPONENT_SERVER_DESCRIPTION
    "HTTP schedule API on a btq bounded task queue, as a systemd service
schedule_server is btq's example HTTP server: broadcast schedules and playlists (M3U in,
XMLTV and JSON out) served through a queue that bounds how much runs and how much waits,
with Prometheus metrics, a live dashboard and a graceful shutdown. Its work is done by
schedule_worker, which keeps the schedules in SQLite (or PostgreSQL).

The package installs the systemd unit schedule-server.service, sandboxed and bounded in
memory, but neither enables nor starts it: systemctl enable --now schedule-server.
Its data lives in /var/lib/btq.")
set(CPACK_DEBIAN_SERVER_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/cmake/debian/postinst"
    "${PROJECT_SOURCE_DIR}/cmake/debian/prerm"
    "${PROJECT_SOURCE_DIR}/cmake/debian/postrm")
set(CPACK_DEBIAN_SERVER_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME "${BTQ_DEVELOPMENT_PACKAGE_NAME}")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SUGGESTS "libhiredis-dev, pkg-config")
set(CPACK_COMPONENT_DEVELOPMENT_DESCRIPTION
    "bounded task queues for C++20 (headers)
btq is a header-only C++20 library that runs work with a hard bound on how much runs at once
and how much may wait, reports what it is doing, and shuts down without stranding a caller.
Executors for threads, child processes and persistent worker processes; an optional
cluster-wide limit on Redis (btq-redis, needs libhiredis-dev). Found by CMake
(find_package(btq)) and by pkg-config (btq, btq-redis).")

include(CPack)
