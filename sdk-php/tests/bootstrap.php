<?php

declare(strict_types=1);

// PSR-4 autoloading without Composer (CI installs Debian's phpunit, no Packagist).
spl_autoload_register(static function (string $class): void {
    foreach (['Plasm\\Tests\\' => __DIR__ . '/', 'Plasm\\' => __DIR__ . '/../src/'] as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});
