#include "recent_errors.hpp"

#include <utility>

namespace schedule_server {

void recent_errors::add(recent_error error) {
    std::lock_guard guard(lock_);
    ring_[next_] = std::move(error);
    next_ = (next_ + 1) % limit;
    count_ = count_ < limit ? count_ + 1 : limit;
}

std::vector<recent_error> recent_errors::newest_first() const {
    std::lock_guard guard(lock_);
    std::vector<recent_error> out;
    out.reserve(count_);
    for (std::size_t i = 1; i <= count_; ++i) {
        out.push_back(ring_[(next_ + limit - i) % limit]);
    }
    return out;
}

} // namespace schedule_server
