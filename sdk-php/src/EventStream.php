<?php

declare(strict_types=1);

namespace Plasm;

/**
 * An incremental `text/event-stream` parser (the WHATWG rules plasm uses: `id`,
 * `event`, `data`, comments), with a bound on one event's size.
 */
final class EventStream
{
    /** Largest event accepted (the Rust client's bound too). */
    public const MAX_EVENT_BYTES = 1 << 20;

    private string $pending = '';
    private string $event = '';
    private string $data = '';
    private bool $hasData = false;
    /** The last `id` seen: the stream's position, for Last-Event-ID. */
    public ?string $lastId = null;

    /**
     * Feeds bytes; returns the events they complete.
     *
     * @return list<array{id:?string,event:string,data:string}>
     * @throws PlasmException when one event exceeds MAX_EVENT_BYTES
     */
    public function feed(string $bytes): array
    {
        $this->pending .= $bytes;
        $out = [];
        while (($nl = strpos($this->pending, "\n")) !== false) {
            $line = rtrim(substr($this->pending, 0, $nl), "\r");
            $this->pending = substr($this->pending, $nl + 1);
            if ($line === '') {
                if ($this->hasData) {
                    $out[] = ['id' => $this->lastId, 'event' => $this->event !== '' ? $this->event : 'message', 'data' => $this->data];
                }
                $this->event = '';
                $this->data = '';
                $this->hasData = false;
                continue;
            }
            if ($line[0] === ':') {
                continue;
            }
            [$field, $value] = array_pad(explode(':', $line, 2), 2, '');
            if (str_starts_with($value, ' ')) {
                $value = substr($value, 1);
            }
            switch ($field) {
                case 'event':
                    $this->event = $value;
                    break;
                case 'data':
                    $this->data .= ($this->hasData ? "\n" : '') . $value;
                    $this->hasData = true;
                    break;
                case 'id':
                    $this->lastId = $value;
                    break;
            }
        }
        if (strlen($this->pending) + strlen($this->data) > self::MAX_EVENT_BYTES) {
            throw new PlasmException('an event of the stream exceeds ' . self::MAX_EVENT_BYTES . ' bytes');
        }
        return $out;
    }
}
