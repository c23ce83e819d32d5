#include "xmltv.hpp"

#include <pugixml.hpp>

#include <algorithm>
#include <unordered_set>

#include "errors.hpp"
#include "text.hpp"
#include "time.hpp"

namespace schedule {

namespace {

/// Collects pugixml's output in a string.
class string_writer final : public pugi::xml_writer {
  public:
    explicit string_writer(std::string& out) : out_(out) {}
    void write(const void* data, std::size_t size) override {
        out_.append(static_cast<const char*>(data), size);
    }

  private:
    std::string& out_;
};

/// The text of the first `name` child, trimmed.
std::string child_text(const pugi::xml_node& node, const char* name) {
    return std::string(trim(node.child(name).text().get()));
}

/// Lines of nodes met in document order: counts each newline once, not once per node.
class line_counter {
  public:
    explicit line_counter(std::string_view text) noexcept : text_(text) {}

    [[nodiscard]] std::size_t line_of(const pugi::xml_node& node) noexcept {
        const auto offset = static_cast<std::size_t>(std::clamp<std::ptrdiff_t>(
            node.offset_debug(), 0, static_cast<std::ptrdiff_t>(text_.size())));
        if (offset < offset_) { // not in document order: count again from the start
            offset_ = 0;
            line_ = 1;
        }
        line_ += static_cast<std::size_t>(
            std::count(text_.begin() + static_cast<std::ptrdiff_t>(offset_),
                       text_.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
        offset_ = offset;
        return line_;
    }

  private:
    std::string_view text_;
    std::size_t offset_ = 0;
    std::size_t line_ = 1;
};

} // namespace

xmltv_document read_xmltv(std::string_view xml, const std::string& field,
                          std::optional<std::string_view> only_channel) {
    if (const auto invalid = find_invalid_utf8(xml)) {
        throw input_error("invalid UTF-8", field, line_at(xml, *invalid));
    }
    if (const std::size_t nul = xml.find('\0'); nul != std::string_view::npos) {
        throw input_error("a NUL byte", field, line_at(xml, nul));
    }
    pugi::xml_document document;
    // No DTD processing beyond skipping it: pugixml expands only the predefined entities and
    // character references, so there is no external entity or entity expansion attack.
    // encoding_utf8, not encoding_auto: the text is UTF-8 (checked above) even when its
    // declaration still names the encoding the guide had before the server decoded it.
    const pugi::xml_parse_result parsed =
        document.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_utf8);
    if (!parsed) {
        throw input_error(std::string("not well-formed XML: ") + parsed.description(), field,
                          line_at(xml, static_cast<std::size_t>(parsed.offset)));
    }
    line_counter lines(xml);
    const pugi::xml_node root = document.document_element();
    if (std::string_view(root.name()) != "tv") {
        throw input_error("the root element is <" + std::string(root.name()) + ">, expected <tv>",
                          field, lines.line_of(root));
    }

    xmltv_document result;
    for (const pugi::xml_node channel : root.children("channel")) {
        result.channels.push_back(
            {channel.attribute("id").value(), child_text(channel, "display-name")});
    }
    for (const pugi::xml_node programme : root.children("programme")) {
        const pugi::xml_attribute channel = programme.attribute("channel");
        // A programme of another channel is not imported, so it is not checked either.
        if (only_channel && (!channel || std::string_view(channel.value()) != *only_channel)) {
            continue;
        }
        const std::size_t line = lines.line_of(programme);
        if (result.programmes.size() == max_xmltv_programmes) {
            throw input_error("more than " + std::to_string(max_xmltv_programmes) + " programmes",
                              field, line);
        }
        xmltv_programme item;
        item.line = line;
        if (!channel) {
            throw input_error("<programme> has no channel attribute", field, line);
        }
        item.channel = channel.value();
        const auto time_attribute = [&](const char* name) -> std::optional<zoned_time> {
            const pugi::xml_attribute attribute = programme.attribute(name);
            if (!attribute) {
                return std::nullopt;
            }
            const std::string_view text = trim(attribute.value());
            try {
                return parse_xmltv_time(text);
            } catch (const input_error& error) {
                throw input_error(std::string("<programme> ") + name + " '" + std::string(text) +
                                      "': " + error.what(),
                                  field, line);
            }
        };
        const std::optional<zoned_time> start = time_attribute("start");
        if (!start) {
            throw input_error("<programme> has no start attribute", field, line);
        }
        item.start = start->utc;
        item.start_offset = start->utc_offset;
        if (const std::optional<zoned_time> stop = time_attribute("stop")) {
            item.stop = stop->utc;
        }
        if (!programme.child("title")) {
            throw input_error("<programme> has no <title>", field, line);
        }
        item.title = child_text(programme, "title");
        if (const pugi::xml_node url = programme.child("url")) {
            item.url = trim(url.text().get());
            item.url_line = lines.line_of(url);
        }
        result.programmes.push_back(std::move(item));
    }
    return result;
}

std::string write_xmltv(std::span<const schedule> schedules) {
    pugi::xml_document document;
    pugi::xml_node declaration = document.append_child(pugi::node_declaration);
    declaration.append_attribute("version") = "1.0";
    declaration.append_attribute("encoding") = "UTF-8";
    pugi::xml_node doctype = document.append_child(pugi::node_doctype);
    doctype.set_value("tv SYSTEM \"xmltv.dtd\"");
    pugi::xml_node tv = document.append_child("tv");
    tv.append_attribute("generator-info-name") = "btq schedule_worker";

    // The DTD puts every <channel> before the first <programme>.
    std::unordered_set<std::string_view> channels_written;
    for (const schedule& written : schedules) {
        if (!channels_written.insert(written.channel).second) {
            continue;
        }
        pugi::xml_node channel = tv.append_child("channel");
        channel.append_attribute("id") = written.channel.c_str();
        channel.append_child("display-name").text() = written.name.c_str();
    }
    for (const schedule& written : schedules) {
        for (const schedule_item& item : written.items) {
            pugi::xml_node programme = tv.append_child("programme");
            programme.append_attribute("start") =
                format_xmltv_time(item.start, item.utc_offset).c_str();
            programme.append_attribute("stop") =
                format_xmltv_time(item.end(), item.utc_offset).c_str();
            programme.append_attribute("channel") = written.channel.c_str();
            programme.append_child("title").text() = item.title.c_str();
            if (!item.url.empty()) {
                programme.append_child("url").text() = item.url.c_str();
            }
        }
    }
    std::string out;
    string_writer writer(out);
    document.save(writer, "  ", pugi::format_default, pugi::encoding_utf8);
    return out;
}

} // namespace schedule
