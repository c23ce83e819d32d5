# Run at install time (cmake --install, component server; CPack): writes schedule-server.service
# from BTQ_UNIT_TEMPLATE into BTQ_UNIT_DIR, with ExecStart naming the program in
# BTQ_UNIT_PROGRAM_DIR. Both directories are relative to the prefix being installed to, unless
# absolute. DESTDIR is honoured, and the file is listed in install_manifest.txt.

foreach(name IN ITEMS BTQ_UNIT_DIR BTQ_UNIT_PROGRAM_DIR)
    if(IS_ABSOLUTE "${${name}}")
        set(${name}_FULL "${${name}}")
    else()
        set(${name}_FULL "${CMAKE_INSTALL_PREFIX}/${${name}}")
    endif()
endforeach()

set(BTQ_UNIT_BINDIR "${BTQ_UNIT_PROGRAM_DIR_FULL}")
set(btq_unit_file "$ENV{DESTDIR}${BTQ_UNIT_DIR_FULL}/schedule-server.service")
message(STATUS "Installing: ${btq_unit_file}")
configure_file("${BTQ_UNIT_TEMPLATE}" "${btq_unit_file}" @ONLY)
list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${btq_unit_file}")
