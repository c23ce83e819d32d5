#include "store.hpp"

#include "sqlite_store.hpp"

#if SCHEDULE_POSTGRES
#include "postgres_store.hpp"
#endif

namespace schedule {

bool postgresql_available() noexcept {
    return SCHEDULE_POSTGRES != 0;
}

std::unique_ptr<store> open_store(const database_location& location) {
    if (location.store == database_location::kind::sqlite) {
        return std::make_unique<sqlite_store>(location.sqlite_file);
    }
#if SCHEDULE_POSTGRES
    return std::make_unique<postgres_store>(location);
#else
    throw database_error("database: " + describe(location) +
                         ": this schedule_worker was built without PostgreSQL support (libpq's "
                         "header was not found): use sqlite:FILE, or rebuild with libpq-dev");
#endif
}

} // namespace schedule
